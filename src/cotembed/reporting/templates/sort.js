
(function(){
  function key(cell){var v=cell.getAttribute('data-v');return v===null?cell.textContent.trim().toLowerCase():parseFloat(v);}
  var tables=document.querySelectorAll('table.sortable');
  for(var t=0;t<tables.length;t++){(function(table){
    var heads=table.tHead.rows[0].cells;
    for(var i=0;i<heads.length;i++){(function(th,col){
      th.tabIndex=0;th.setAttribute('aria-sort','none');
      function sort(){
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.getAttribute('aria-sort')!=='ascending';
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
        for(var h=0;h<heads.length;h++){heads[h].setAttribute('aria-sort','none');}
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        for(var r=0;r<rows.length;r++){body.appendChild(rows[r]);}
      }
      th.addEventListener('click',sort);
      th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sort();}});
    })(heads[i],i);}
  })(tables[t]);}
})();
